"""embedding-service: image embeddings, category/article-type head and colour for garment crops."""
