"""The web demo: every task of the model in one page (Gradio), on CPU.

* :mod:`findvl.demo.service`: the work behind each endpoint, framework-free and tested alone.
* :mod:`findvl.demo.app`: the Gradio page and its named API endpoints.
* :mod:`findvl.demo.server`: loading a run and serving the page (``findvl demo``).
"""
