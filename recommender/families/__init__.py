"""Model families, one module each; :mod:`recommender.family` discovers and registers them.

A module here calls :func:`recommender.family.register_family` at import. A
module whose optional extra is missing raises ImportError at import and is
listed by :func:`recommender.family.unavailable_families` instead.
"""
