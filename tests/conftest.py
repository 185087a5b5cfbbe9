"""Shared by the whole suite: this folder is on ``sys.path`` (pytest's prepend import mode
puts a conftest's folder there), so every test module can ``from _clips import ...``."""
