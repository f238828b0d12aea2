"""File formats dogbreed writes and reads back: the checkpoint (``checkpoint``) and the export description
(``export``), validated by one shared validator (``classes``); torch files read and written safely (``torchfile``).

Everything here treats a file as untrusted input: nothing is unpickled, every field is checked.
"""
