"""The zoo's cards: one YAML file per registry name, installed as `vaezoo.zoo_configs`."""
