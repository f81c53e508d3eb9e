"""The restart policies: what happens when pgpool needs a restart to take a change.

Each is a ``Restarter`` (pgpool/actuator.py), called by the actuator on every verified pass while
pgpool needs one: ``signal.py`` signals pgpool's pid, ``rollout.py`` asks the Deployment for a
rolling restart. Neither knows the actuator nor the other.
"""
