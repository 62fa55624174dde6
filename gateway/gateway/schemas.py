"""Gateway-private types: the catalog API's product metadata and its reports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts import Category


class ProductIn(BaseModel):
    """A product's metadata as a store sends it; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")
    gender: str | None = Field(default=None, max_length=40, description="Men, Women, Unisex, Boys, Girls")
    category: Category | None = Field(default=None, description="Left out: the classifier decides")
    article_type: str | None = Field(default=None, max_length=80, description="Left out: the classifier's")
    colour: str | None = Field(default=None, max_length=40, description="Left out: the dominant colour")
    name: str | None = Field(default=None, max_length=300)
    usage: str | None = Field(default=None, max_length=40)


class BatchLine(ProductIn):
    """One JSONL line: metadata plus where the image is, a path inside the catalog folder or a URL."""

    image: str | None = Field(
        default=None, max_length=1000, description="Path relative to the catalog folder"
    )
    image_url: str | None = Field(default=None, max_length=2000, description="http(s) URL of the image")

    @model_validator(mode="after")
    def one_image_source(self) -> BatchLine:
        if (self.image is None) == (self.image_url is None):
            raise ValueError("give exactly one of image (a path in the catalog folder) or image_url")
        return self


class AddReport(BaseModel):
    indexed: list[str] = Field(description="Product ids now in the index")
    failed: dict[str, str] = Field(description="Product id -> why it was not indexed (the rest were)")
