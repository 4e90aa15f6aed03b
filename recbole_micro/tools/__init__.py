r"""The tool layer: hyper-parameter search and model comparison, one concept per module.

* ``files``    — shared helpers: atomic writes, JSON-plain values, config-file lists, command lines
* ``values``   — the run configuration: command-line overrides, and values read from files made safe
* ``space``    — ``.hyper`` search spaces (RecBole's format)
* ``export``   — the tuning export (``<out>.json`` / ``<out>.txt``): format, best-by-validation, text
* ``search``   — the search itself: RecBole's ``HyperTuning`` (hyperopt) or Ray Tune
* ``results``  — the comparison results file (runs per model and seed, per-user sidecars)
* ``stats``    — statistics over seeds and users (mean ± std, paired tests, ratios)
* ``page``     — the comparison page: Markdown table and matplotlib chart (and the tuned models' grids)
* ``progress`` — progress lines of long runs (per epoch for a comparison run, per validation for a trial)
* ``trial_run`` — a search's best trial taken over as the comparison's run on the search's seed
* ``compare``  — running a comparison (seeds, resume, per-user values)
* ``cli``      — the command lines of ``run_hyper.py`` / ``run_compare.py`` (and their sub-commands)

Dependencies run one way, top to bottom of ``cli`` → (``search``, ``compare`` → ``trial_run``) → (``page`` → ``export``,
``results``, ``stats``, ``progress``) → (``space``, ``values``) → ``files``; nothing here imports ``cli.py``.
"""
