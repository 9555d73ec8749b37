"""zhichao.vision stage."""
