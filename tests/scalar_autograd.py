"""A tiny scalar reverse-mode autograd engine, written for the gradient-oracle tests.

In the spirit of the lectures' micrograd: every number is a `Value` that remembers the values
it was computed from and how to pass a gradient back to them. It shares no code with torch, so
gradients it computes are an independent oracle for torch's autograd on a small batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

Number = int | float


class Value:
    """A scalar with a gradient slot; arithmetic on Values builds the computation graph."""

    __slots__ = ("_backward", "_parents", "data", "grad")

    def __init__(self, data: Number, parents: tuple[Value, ...] = ()) -> None:
        self.data = float(data)
        self.grad = 0.0
        self._parents = parents
        self._backward: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"Value({self.data:.6g}, grad={self.grad:.6g})"

    @staticmethod
    def lift(other: Value | Number) -> Value:
        return other if isinstance(other, Value) else Value(other)

    def __add__(self, other: Value | Number) -> Value:
        other = Value.lift(other)
        out = Value(self.data + other.data, (self, other))

        def backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = Value.lift(other)
        out = Value(self.data * other.data, (self, other))

        def backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        out = Value(self.data**exponent, (self,))

        def backward() -> None:
            self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,))

        def backward() -> None:
            self.grad += (1.0 - t * t) * out.grad

        out._backward = backward
        return out

    def exp(self) -> Value:
        e = math.exp(self.data)
        out = Value(e, (self,))

        def backward() -> None:
            self.grad += e * out.grad

        out._backward = backward
        return out

    def log(self) -> Value:
        out = Value(math.log(self.data), (self,))

        def backward() -> None:
            self.grad += out.grad / self.data

        out._backward = backward
        return out

    def __neg__(self) -> Value:
        return self * -1.0

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-Value.lift(other))

    def __rsub__(self, other: Number) -> Value:
        return Value.lift(other) - self

    def __truediv__(self, other: Value | Number) -> Value:
        return self * Value.lift(other) ** -1

    __radd__ = __add__
    __rmul__ = __mul__

    def backward(self) -> None:
        """Gradients of this value with respect to every value it depends on."""
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:  # iterative topological sort: graphs here are deeper than the recursion limit
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((parent, False) for parent in node._parents)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


def total(values: Iterable[Value]) -> Value:
    result: Value | None = None
    for v in values:
        result = v if result is None else result + v
    assert result is not None, "total() of nothing"
    return result
