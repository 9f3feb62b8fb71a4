// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Reentrant: a malicious receiver for the TaskMarket tests (never deployed outside tests).
/// @notice Forwards calls from its owner (so it can be a submitter, verifier or
///         challenger) and, when it receives ether, calls back into the target with a
///         preset payload (e.g. withdraw() or finalize(taskId)). It records how many
///         callbacks were tried and how many succeeded, and can refuse all payments.
contract Reentrant {
    address public immutable owner;
    address public target;
    bytes public reenterData;
    uint256 public maxReentries;
    bool public refusePayments;

    uint256 public attempts;
    uint256 public successes;
    uint256 public received;
    bytes public lastRevert;

    error NotOwner();
    error Refused();

    constructor() {
        owner = msg.sender;
    }

    /// @notice Set what receive() calls back into and how many times.
    function arm(address target_, bytes calldata reenterData_, uint256 maxReentries_) external {
        if (msg.sender != owner) revert NotOwner();
        target = target_;
        reenterData = reenterData_;
        maxReentries = maxReentries_;
    }

    function setRefuse(bool refuse) external {
        if (msg.sender != owner) revert NotOwner();
        refusePayments = refuse;
    }

    /// @notice Call `to` with `data` and `value` (from this contract's own balance or
    ///         msg.value); bubbles the revert data up unchanged.
    function execute(address to, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (msg.sender != owner) revert NotOwner();
        (bool ok, bytes memory ret) = to.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (refusePayments) revert Refused();
        received += msg.value;
        if (attempts < maxReentries && target != address(0)) {
            attempts += 1;
            (bool ok, bytes memory ret) = target.call(reenterData);
            if (ok) {
                successes += 1;
            } else {
                lastRevert = ret;
            }
        }
    }
}
