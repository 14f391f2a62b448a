"""Reports: observations, differences and findings as a kernel developer reads them."""
