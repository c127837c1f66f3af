"""A parsed pack (and the site overrides of it) to a compiled pack: params, detectors, scope, names, tests."""
