"""lrserve.service"""
