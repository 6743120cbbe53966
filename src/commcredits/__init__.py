"""commcredits: Communications Credits for organizations' telephone usage."""

__version__ = "0.1.0"
