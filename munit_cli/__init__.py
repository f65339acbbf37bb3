"""munit: MUNIT image-to-image translation as a command-line suite."""

__version__ = "0.1.0"
