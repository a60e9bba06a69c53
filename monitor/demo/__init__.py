"""Demo support: a synthetic world of networks and a generator of school-day portal traffic."""
