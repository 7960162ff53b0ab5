"""Backdoor (data-poisoning) attacks and defenses."""
