"""Off-policy actor-critics with Q-function critics: DDPG, TD3 and the SAC family."""
