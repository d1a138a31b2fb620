"""Dataset constants that many layers need: class names, colours, pixel counts.

The ground floor of the project: these modules import nothing, so the registry's records,
the task packages and the panels can all import them without an arrow running back up.
"""
