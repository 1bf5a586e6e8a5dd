"""Persistence of runs and their event histories (see ``base.Store`` for the contract)."""
