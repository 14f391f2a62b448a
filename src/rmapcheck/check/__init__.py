"""The model checker: explore sequences and interleavings of kernel operations.

Layout, after Stateright: :mod:`~rmapcheck.check.world` (the explored state:
copy and canonical fingerprint), :mod:`~rmapcheck.check.model` (init states,
actions, next state, properties), :mod:`~rmapcheck.check.properties` (named
properties), one module per strategy (:mod:`~rmapcheck.check.bfs`,
:mod:`~rmapcheck.check.dfs`, :mod:`~rmapcheck.check.simulation`),
:mod:`~rmapcheck.check.checker` (the builder and the result),
:mod:`~rmapcheck.check.portfolio` (the default: focused bound sets run one
after another) and :mod:`~rmapcheck.check.trace` (counterexamples as
replayable JSON).
The checker imports neither click nor rich.
"""
