"""Workflows: jobs that put several roles together in one launch.

:mod:`.couple` runs the sim, train and farm roles of ``couple`` side by side;
:mod:`.couple_config` turns its flags into a validated configuration. This is the one
layer that may import both :mod:`tcoupled.coupling` and :mod:`tcoupled.screening`;
nothing below it imports it, and only :mod:`tcoupled.app` and :mod:`tcoupled.bench` do.
"""
