"""Explanations of any `predict(images) -> probabilities` callable: SHAP attributions, attribution
drift against a reference, deletion-curve faithfulness, and plots.

A leaf package (like `compress/`): it works on numpy arrays and callables and never imports
`bench`. Images are float (N, H, W, C) pixels in 0..255; shap, cv2 and matplotlib are imported
inside the functions that need them, so importing this package is cheap.
"""
