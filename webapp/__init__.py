"""The VLAVAD web app: Gradio Blocks, one module per tab, thin over the `vlavad` library."""

from webapp.app import build_app, launch

__all__ = ["build_app", "launch"]
