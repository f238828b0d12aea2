"""Models: devices (``devices``), architectures and our classifier (``build``), weights files (``weights``), ready
ImageNet models (``zoo``), the inference graph (``predictor``), and "which model" (``sources``: a run, a
checkpoint, an export or a ready model, resolved to one ``ModelSource``).

Importing this package imports nothing heavy; torch comes with ``build``, ``weights``, ``predictor``, ``devices``.
"""
