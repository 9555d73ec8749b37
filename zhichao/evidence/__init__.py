"""zhichao.evidence stage."""
