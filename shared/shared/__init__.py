"""Shop The Look common library: contracts, image decoding, service scaffolding and clients."""
