"""Starts the VLAVAD web app: `python app.py` (port from PORT or GRADIO_SERVER_PORT, default 7860)."""

from webapp import launch

if __name__ == "__main__":
    launch()
