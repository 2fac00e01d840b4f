"""The ground floor: errors, the generic registry, tensor specs, feeds, atomic files, user code, the version.

Nothing here imports anything else of ours; every other package imports it.
"""
