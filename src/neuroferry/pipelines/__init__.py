"""Job kinds built on the engine: each pipeline is one :class:`~neuroferry.engine.JobKind`.

Pipelines never import each other; one starts another's job through the engine.
"""

__all__: list[str] = []
