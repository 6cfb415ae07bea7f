"""The jupyter-server extension: LM Studio's HTTP API on the Jupyter port."""
