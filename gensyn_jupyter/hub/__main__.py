"""``python -m gensyn_jupyter.hub --config jupyterhub_config.py``."""

from ._service import main

main()
