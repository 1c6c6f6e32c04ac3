"""avsf: Audiovisual SlowFast networks, from raw videos to evaluated models."""
