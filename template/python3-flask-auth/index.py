"""Entry point of the function: ``python index.py``, the template's fprocess."""

from faas_runtime import run_flask

if __name__ == "__main__":
    run_flask("function.handler")
