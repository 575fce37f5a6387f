"""The page views, one module per concern; control_room.urls routes to them."""
