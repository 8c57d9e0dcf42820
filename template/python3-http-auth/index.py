"""Entry point of the function: ``python index.py``, the template's fprocess."""

from faas_runtime import run_http

if __name__ == "__main__":
    run_http("function.handler")
