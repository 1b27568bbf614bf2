"""Run a model on a dataset split and score every task of FIND (Tables 3-4 of the paper).

:func:`findvl.evaluation.runner.evaluate_run` is the entry point; one module per task family
writes predictions in standard formats and scores them with :mod:`findvl.metrics`. This package
file imports nothing, so :mod:`findvl.evaluation.tasks` stays light for the command line.
"""
