"""Agents: hold the model, turn observations into actions, and expose what losses need.

Import them from their modules (`rlfleet.agents.pg`, `rlfleet.agents.dqn`, ...); this package
imports nothing, so the torch-free `rlfleet.agents.config` loads without torch.
"""
