"""README badges: what each says (model), how it is drawn (svg), and the routes."""
