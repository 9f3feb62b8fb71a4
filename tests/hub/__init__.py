"""The class service of a JupyterHub (gensyn_jupyter.hub)."""
