"""autoint-view: frames of a trained run for the browser (frames) and the page that shows them (server)."""
