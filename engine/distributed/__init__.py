"""veille on a cluster: the single-machine run's per-patient stages, on slices of whole patients.

Every stage after ingest is per patient, and ingest itself is per patient once the run's few
global values are known (:func:`engine.pipeline.score_slice`). A distributed engine therefore
only cuts the input by patient, runs that one function on each slice where the data lies, and
brings the slices' episodes back to the driver, which ranks them exactly as
:meth:`engine.Engine.score` does (:meth:`engine.Engine.rank`).

| module | engine |
|---|---|
| :mod:`.spark` | Apache Spark (PySpark): ``veille score --engine spark --master URL`` |
"""
