"""totpd: a multi-factor verification service for RFC 6238 time-based one-time passwords."""

__version__ = "0.1.0"
