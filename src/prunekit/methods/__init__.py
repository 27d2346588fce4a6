"""Pruning methods: scores before training (``init``) and one-shot after training (``oneshot``)."""
