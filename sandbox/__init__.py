"""negotiation-sandbox: sales-rep and prospect agents negotiate; a judge scores; experiments compare."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("negotiation-sandbox")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
