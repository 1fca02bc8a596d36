"""DORA keys: windows and quantiles over stored rollouts, and the incidents API."""
