"""The archive: catalog, product store, access policy, search and the HTTP API."""
