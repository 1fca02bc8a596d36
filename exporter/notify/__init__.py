"""`releasebits notify`: a pipeline step that records a deployment or build from CI."""
