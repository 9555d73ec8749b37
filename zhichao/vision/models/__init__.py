"""Packaged model files (byte-identical copies; see NOTICE and training/vision/vendor_models.py)."""
