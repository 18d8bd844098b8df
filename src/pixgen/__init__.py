"""pixgen: self-hosted text/image-to-video with sound on LTX-2."""

__version__ = "0.1.0"
