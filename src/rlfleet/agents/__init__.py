"""Agents: hold the model, turn observations into actions, and expose what losses need."""

from rlfleet.agents.base import Agent, AgentInputs, AgentStep
from rlfleet.agents.dqn import DqnAgent
from rlfleet.agents.pg import CategoricalPgAgent, GaussianPgAgent

__all__ = ["Agent", "AgentInputs", "AgentStep", "CategoricalPgAgent", "DqnAgent", "GaussianPgAgent"]
