"""fc.frontend: importers of source frameworks into fc's IR, one subpackage per framework,
all built from one kit: ``registry`` (converters keyed by source op names, with version
ranges, aliases and up-front checks), ``attrs`` (typed attribute and literal readers) and
``_context`` (what a converter sees of one source node). DEVELOPERS.md "Frontends" shows how.
"""
