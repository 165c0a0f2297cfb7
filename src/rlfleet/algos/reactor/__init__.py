"""Reactor (Gruslys et al. 2018): the actor-critic and its distributional Retrace."""
