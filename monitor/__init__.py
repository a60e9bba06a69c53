"""portal-monitor: watches school portal logins and page views for misuse."""

__version__ = "0.1.0"
