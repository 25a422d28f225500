"""Hostile and odd inputs generated at test time (images, checkpoints) and a tiny model to feed them to."""
