// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title TaskMarket: escrow, stake and challenge game for verified training tasks.
/// @notice Holds native currency. A submitter funds a task, the operator assigns
///         staked provider(s), a provider commits a checkpoint root, anyone may
///         challenge during a window, the referee resolves challenges and
///         disputes, and anyone finalizes after the window. Every payout is a
///         credit that its owner pulls with `withdraw()`.
/// @dev    Invariant: address(this).balance ==
///         totalEscrow + totalStake + totalBonds + totalCredits.
///         See docs/contracts.md for roles, the state machine and money flows.
contract TaskMarket {
    // ------------------------------------------------------------------ types

    enum Status {
        None, // 0: no such task
        Open, // 1: funded, waiting for the operator
        Assigned, // 2: provider(s) assigned, waiting for commit(s); stored as Open with a
        //            provider set (one storage write less), reported as Assigned
        Committed, // 3: result committed; challenge window running or over
        Challenged, // 4: someone bonded a challenge; the referee decides
        Disputed, // 5: two replicas committed different roots; the referee decides
        Finalized, // 6: paid out
        Cancelled, // 7: withdrawn by the submitter before assignment
        Expired, // 8: deadline passed without (all) commits
        Slashed // 9: fraud proven; escrow refunded, cheater slashed
    }

    /// @dev Packed so that the single-provider path (create, assign, commit,
    ///      finalize) writes four new slots: 0 and 1 on create, 2 and 3 on assign.
    ///      Checkpoint roots and output hashes live in the TaskCommitted events; only
    ///      a replicated task keeps its first root, to compare the second against.
    struct Task {
        // slot 0: what every call reads
        address submitter;
        uint40 deadline;
        uint40 challengeEnd; // set by the commit that opens the window
        Status status;
        uint8 flags; // bit 0: provider committed, bit 1: provider2 committed, bit 2: replicated, bit 3: handed over
        // slot 1
        uint96 maxPayment;
        uint96 verifierFee;
        // slot 2
        address provider;
        uint96 amountDue; // the price until the provider commits, then what it claimed
        // slot 3
        address verifier;
        uint96 price; // per provider
        // slot 4 (replication only)
        address provider2;
        uint96 amountDue2; // as amountDue, for provider2
        // slot 5 (challenge only)
        address challenger;
        uint96 bond;
        // slot 6 (replication only)
        bytes32 replicaRoot; // the first of the two roots committed
    }

    /// @dev A provider's stake and anyone's withdrawable credit share one slot, so
    ///      paying a staked provider updates a slot that is already non-zero;
    ///      `used` keeps the slot non-zero after a full withdrawal, so the next
    ///      credit costs 5,000 gas instead of 22,100.
    struct Account {
        // slot 0
        uint96 bonded;
        uint96 credit;
        uint40 unbondAt;
        bool used;
        // slot 1
        uint96 unbonding;
    }

    /// @dev The accounting counters, packed in two slots that never become zero
    ///      (`warm`), so updating them costs 5,000 gas, never 22,100.
    struct Totals {
        uint120 escrow;
        uint128 credits;
        bool warm;
    }

    struct Holdings {
        uint128 stake;
        uint120 bonds;
        bool warm;
    }


    uint8 private constant _COMMITTED1 = 1;
    uint8 private constant _COMMITTED2 = 2;
    uint8 private constant _REPLICATED = 4;
    uint8 private constant _BOTH = _COMMITTED1 | _COMMITTED2;
    uint8 private constant _HANDED_OVER = 8; // finalize reads the handovers only then
    uint64 private constant _MAX_DURATION = type(uint32).max;
    uint64 private constant _MAX_TIME = type(uint40).max - _MAX_DURATION;
    /// @dev Bounds the loop in finalize: a task handed over more often fails instead.
    uint256 private constant _MAX_HANDOVERS = 4;
    /// @dev Domain tag of the progress a provider signs at each checkpoint.
    bytes32 private constant _PROGRESS_TAG = keccak256("gensyn.TaskMarket.progress.v1");
    uint256 private constant _HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    // ------------------------------------------------------------------ errors

    error ZeroAddress();
    error ZeroAmount();
    error AmountTooLarge(uint256 amount, uint256 maximum);
    error NotOperator(address caller);
    error NotReferee(address caller);
    error NotSubmitter(bytes32 taskId, address caller);
    error TaskExists(bytes32 taskId);
    error UnknownTask(bytes32 taskId);
    error WrongPayment(uint256 expected, uint256 sent);
    error DurationTooLong(uint64 duration, uint64 maximum);
    error DeadlinePassed(uint64 deadline);
    error DeadlineTooFar(uint64 deadline, uint64 maximum);
    error DeadlineNotReached(uint64 deadline);
    error WrongStatus(bytes32 taskId, uint8 status);
    error InvalidProvider(address provider);
    error InvalidVerifier(address verifier);
    error StakeTooLow(address provider, uint256 stake, uint256 minimum);
    error PriceAboveMaximum(uint256 total, uint256 maximum);
    error NotAssignedProvider(bytes32 taskId, address caller);
    error InvalidCheater(bytes32 taskId, address cheater);
    error AlreadyCommitted(bytes32 taskId, address provider);
    error AmountAboveMaximum(uint256 amountDue, uint256 maximum);
    error ChallengeWindowOpen(uint64 endsAt);
    error ChallengeWindowClosed(uint64 endedAt);
    error BondTooLow(uint256 bond, uint256 minimum);
    error InsufficientStake(uint256 bonded, uint256 requested);
    error StillUnbonding(uint64 until);
    error NothingToWithdraw();
    error TransferFailed(address to, uint256 amount);
    error BadProgressSignature(bytes32 taskId, address signer, address provider);
    error TooManyHandovers(bytes32 taskId, uint256 maximum);
    error NotReassignable(bytes32 taskId);

    // ------------------------------------------------------------------ events

    event TaskCreated(
        bytes32 indexed taskId,
        address indexed submitter,
        bytes32 specHash,
        uint256 maxPayment,
        uint256 verifierFee,
        uint64 deadline
    );
    event TaskCancelled(bytes32 indexed taskId, uint256 refund);
    event TaskAssigned(
        bytes32 indexed taskId, address indexed provider, address provider2, address verifier, uint256 price
    );
    event TaskCommitted(
        bytes32 indexed taskId,
        address indexed provider,
        bytes32 checkpointRoot,
        bytes32 outputHash,
        uint256 amountDue,
        uint64 challengeEnd
    );
    event TaskDisputed(bytes32 indexed taskId, bytes32 checkpointRoot, bytes32 checkpointRoot2);
    event TaskChallenged(bytes32 indexed taskId, address indexed challenger, uint256 bond);
    event ChallengeRejected(bytes32 indexed taskId, address indexed challenger, uint256 bond);
    event FraudProven(
        bytes32 indexed taskId,
        address indexed cheater,
        address whistleblower,
        uint256 slashed,
        uint256 toSubmitter,
        uint256 toWhistleblower,
        uint256 toTreasury
    );
    event TaskReassigned(
        bytes32 indexed taskId,
        address indexed from,
        address indexed to,
        uint256 step,
        bytes32 leaf,
        uint256 paidFrom
    );
    event TaskFinalized(bytes32 indexed taskId, uint256 paidProviders, uint256 paidVerifier, uint256 refund);
    event TaskExpired(bytes32 indexed taskId, uint256 refund, uint256 penalty);
    event Staked(address indexed provider, uint256 amount, uint256 bonded);
    event UnstakeRequested(address indexed provider, uint256 amount, uint64 unbondAt);
    event StakeWithdrawn(address indexed provider, uint256 amount);
    event Slashed(bytes32 indexed taskId, address indexed provider, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    // ------------------------------------------------------------------ state

    address public immutable operator;
    address public immutable referee;
    address public immutable treasury;
    uint256 public immutable minStake;
    uint256 public immutable minBond;
    uint64 public immutable unbondingDelay;
    uint64 public immutable challengeWindow;
    /// @notice Taken from a cheater's stake when fraud is proven (= minStake).
    uint256 public immutable slashAmount;
    /// @notice Taken from an assigned provider that let its task expire (= minStake / 10).
    uint256 public immutable expiryPenalty;

    mapping(bytes32 => Task) private _tasks;
    mapping(address => Account) private _accounts;
    Totals private _totals; // settlement moves escrow to credits in one slot
    Holdings private _holdings;
    /// @dev The providers lost mid-run on a task, each packed as
    ///      `uint160(provider) | amount << 160`: paid `amount` at finalize (what
    ///      it signed for its checkpoint), slashable until then. Packed by hand:
    ///      a struct array shares the optimizer's store helpers with assign,
    ///      which then stops merging its writes (776 gas more on every task).
    mapping(bytes32 => uint256[]) private _handovers;

    constructor(
        address operator_,
        address referee_,
        address treasury_,
        uint256 minStake_,
        uint256 minBond_,
        uint64 unbondingDelay_,
        uint64 challengeWindow_
    ) {
        if (operator_ == address(0) || referee_ == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        if (minStake_ > type(uint96).max) revert AmountTooLarge(minStake_, type(uint96).max);
        // Durations stay far below 2**40 s, so every deadline fits the packed uint40 fields.
        if (unbondingDelay_ > _MAX_DURATION) revert DurationTooLong(unbondingDelay_, _MAX_DURATION);
        if (challengeWindow_ > _MAX_DURATION) revert DurationTooLong(challengeWindow_, _MAX_DURATION);
        operator = operator_;
        referee = referee_;
        treasury = treasury_;
        minStake = minStake_;
        minBond = minBond_;
        unbondingDelay = unbondingDelay_;
        challengeWindow = challengeWindow_;
        slashAmount = minStake_;
        expiryPenalty = minStake_ / 10;
        _totals.warm = true;
        _holdings.warm = true;
    }

    // ------------------------------------------------------------------ stake

    /// @notice Add msg.value to the caller's bonded stake.
    function stake() external payable {
        if (msg.value == 0) revert ZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint256 bonded = a.bonded + msg.value;
        a.bonded = _u96(bonded);
        _holdings.stake += uint128(msg.value);
        emit Staked(msg.sender, msg.value, bonded);
    }

    /// @notice Move `amount` of bonded stake to unbonding; it can be withdrawn
    ///         `unbondingDelay` seconds from now (a new request restarts the clock
    ///         for everything unbonding). Unbonding stake can still be slashed.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint256 bonded = a.bonded;
        if (amount > bonded) revert InsufficientStake(bonded, amount);
        uint64 until = uint64(block.timestamp) + unbondingDelay;
        a.bonded = uint96(bonded - amount);
        a.unbonding += uint96(amount);
        a.unbondAt = uint40(until);
        emit UnstakeRequested(msg.sender, amount, until);
    }

    /// @notice After the unbonding delay, move the unbonding stake to the caller's
    ///         credit (then `withdraw()` pays it).
    function withdrawStake() external {
        Account storage a = _accounts[msg.sender];
        uint256 amount = a.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        uint64 until = a.unbondAt;
        if (block.timestamp < until) revert StillUnbonding(until);
        a.unbonding = 0;
        a.unbondAt = 0;
        _holdings.stake -= uint128(amount);
        _credit(msg.sender, amount);
        emit StakeWithdrawn(msg.sender, amount);
    }

    // ------------------------------------------------------------------ tasks

    /// @notice Fund a task: msg.value must be exactly maxPayment + verifierFee, and
    ///         the deadline (unix seconds) in the future.
    function createTask(bytes32 taskId, bytes32 specHash, uint256 maxPayment, uint256 verifierFee, uint64 deadline)
        external
        payable
    {
        Task storage t = _tasks[taskId];
        if (t.status != Status.None) revert TaskExists(taskId);
        if (maxPayment > type(uint96).max) revert AmountTooLarge(maxPayment, type(uint96).max);
        if (verifierFee > type(uint96).max) revert AmountTooLarge(verifierFee, type(uint96).max);
        uint256 total = maxPayment + verifierFee;
        if (total > type(uint96).max) revert AmountTooLarge(total, type(uint96).max);
        if (msg.value != total) revert WrongPayment(total, msg.value);
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
        if (deadline > _MAX_TIME) revert DeadlineTooFar(deadline, _MAX_TIME);
        t.submitter = msg.sender;
        t.deadline = uint40(deadline);
        t.status = Status.Open;
        t.maxPayment = uint96(maxPayment);
        t.verifierFee = uint96(verifierFee);
        _totals.escrow += uint120(total);
        emit TaskCreated(taskId, msg.sender, specHash, maxPayment, verifierFee, deadline);
    }

    /// @notice The submitter takes an unassigned task back; the whole escrow is credited to it.
    function cancelTask(bytes32 taskId) external {
        Task storage t = _task(taskId);
        if (msg.sender != t.submitter) revert NotSubmitter(taskId, msg.sender);
        _requireStatus(taskId, _status(t), Status.Open);
        t.status = Status.Cancelled;
        uint256 refund = uint256(t.maxPayment) + t.verifierFee;
        _pay(msg.sender, refund);
        _settle(refund);
        emit TaskCancelled(taskId, refund);
    }

    /// @notice Operator only: assign a staked provider (and a second one for
    ///         replication, else address(0)), an optional verifier (address(0): the
    ///         verifier fee is refunded at settlement) and the price per provider.
    function assign(bytes32 taskId, address provider, address provider2, address verifier, uint256 price) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        Task storage t = _task(taskId);
        _requireStatus(taskId, _status(t), Status.Open);
        uint64 deadline = t.deadline;
        if (block.timestamp > deadline) revert DeadlinePassed(deadline);
        if (provider == address(0)) revert InvalidProvider(provider);
        if (provider2 == provider) revert InvalidProvider(provider2);
        if (verifier != address(0) && (verifier == provider || verifier == provider2)) {
            revert InvalidVerifier(verifier);
        }
        _requireStaked(provider);
        uint256 maxPayment = t.maxPayment;
        uint256 total = price;
        if (provider2 != address(0)) {
            _requireStaked(provider2);
            if (price <= maxPayment) total = price * 2;
            t.provider2 = provider2;
            t.amountDue2 = uint96(price);
            t.flags = _REPLICATED;
        }
        if (total > maxPayment) revert PriceAboveMaximum(total, maxPayment);
        t.provider = provider; // status Assigned: see _status()
        t.amountDue = uint96(price); // the most the provider may claim
        t.verifier = verifier;
        t.price = uint96(price);
        emit TaskAssigned(taskId, provider, provider2, verifier, price);
    }

    /// @notice An assigned provider commits its checkpoint root and output hash
    ///         (both kept in the TaskCommitted event) and claims `amountDue` (at most
    ///         the price), before the deadline. This opens the challenge window; with
    ///         replication the window opens on the second commit, and two different
    ///         roots make the task Disputed.
    function commit(bytes32 taskId, bytes32 checkpointRoot, bytes32 outputHash, uint256 amountDue) external {
        Task storage t = _task(taskId);
        _requireStatus(taskId, _status(t), Status.Assigned);
        uint64 deadline = t.deadline;
        if (block.timestamp > deadline) revert DeadlinePassed(deadline);
        uint8 flags = t.flags;
        uint8 bit;
        if (msg.sender == t.provider) {
            bit = _COMMITTED1;
        } else if (flags & _REPLICATED != 0 && msg.sender == t.provider2) {
            bit = _COMMITTED2;
        } else {
            revert NotAssignedProvider(taskId, msg.sender);
        }
        if (flags & bit != 0) revert AlreadyCommitted(taskId, msg.sender);
        // Until its commit, a provider's amountDue holds the price (read from the slot
        // this function reads anyway).
        if (bit == _COMMITTED1) {
            uint256 price = t.amountDue;
            if (amountDue > price) revert AmountAboveMaximum(amountDue, price);
            t.amountDue = uint96(amountDue);
        } else {
            uint256 price = t.amountDue2;
            if (amountDue > price) revert AmountAboveMaximum(amountDue, price);
            t.amountDue2 = uint96(amountDue);
        }
        uint64 end;
        if (flags & _REPLICATED == 0) {
            end = _openWindow(t, Status.Committed);
        } else if (flags & _BOTH == 0) {
            t.replicaRoot = checkpointRoot; // first of two: wait for the other
        } else {
            bytes32 first = t.replicaRoot;
            if (first == checkpointRoot) {
                end = _openWindow(t, Status.Committed);
            } else {
                end = _openWindow(t, Status.Disputed);
                (bytes32 root1, bytes32 root2) = bit == _COMMITTED1 ? (checkpointRoot, first) : (first, checkpointRoot);
                emit TaskDisputed(taskId, root1, root2);
            }
        }
        t.flags = flags | bit;
        emit TaskCommitted(taskId, msg.sender, checkpointRoot, outputHash, amountDue, end);
    }

    /// @notice Operator only: the assigned provider of an unreplicated task was lost
    ///         before committing, and `nextProvider` resumes its run from the
    ///         checkpoint `leaf` at optimizer step `step`. `signature` is the lost
    ///         provider's EIP-191 signature over `_progressHash(taskId, step, leaf,
    ///         amount)`: it claims `amount` for the work up to that checkpoint, so
    ///         the operator can neither invent progress nor pay the lost provider
    ///         more than it signed. That amount is paid at finalize (nothing if the
    ///         task expires or a fraud is proven); the next provider may claim at most
    ///         what is left of the price. `verifier` replaces the task's verifier
    ///         (address(0) for none). Before the deadline only, at most 4 times; a
    ///         handed-over provider stays slashable for its segments.
    function reassign(
        bytes32 taskId,
        address nextProvider,
        address verifier,
        uint256 step,
        bytes32 leaf,
        uint256 amount,
        bytes calldata signature
    ) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        // Written out rather than through the helpers the task path shares, so the
        // optimizer keeps inlining those in assign/commit/finalize (gas of the task path).
        Task storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert UnknownTask(taskId);
        if (status != Status.Open || t.provider == address(0)) revert WrongStatus(taskId, uint8(status));
        uint64 deadline = t.deadline;
        if (block.timestamp > deadline) revert DeadlinePassed(deadline);
        if (t.flags & (_REPLICATED | _BOTH) != 0) revert NotReassignable(taskId); // or committed
        if (nextProvider == address(0)) revert InvalidProvider(nextProvider);
        if (verifier != address(0) && verifier == nextProvider) revert InvalidVerifier(verifier);
        uint256 bonded = _accounts[nextProvider].bonded;
        if (bonded < minStake) revert StakeTooLow(nextProvider, bonded, minStake);
        uint256[] storage handovers = _handovers[taskId];
        if (handovers.length >= _MAX_HANDOVERS) revert TooManyHandovers(taskId, _MAX_HANDOVERS);
        address lost = t.provider;
        address signer = _recover(_progressHash(taskId, step, leaf, amount), signature);
        if (signer != lost) revert BadProgressSignature(taskId, signer, lost);
        uint256 left = t.amountDue; // the price left until the provider commits
        if (amount > left) revert AmountAboveMaximum(amount, left);
        handovers.push(uint256(uint160(lost)) | (amount << 160)); // amount < 2**96: <= left
        uint256 price = t.price;
        // Whole-slot writes (slot 0: flags in its top byte; slot 2: provider,
        // amountDue; slot 3: verifier, price): field writes here would share the
        // optimizer's store helpers with assign, which then stops merging its own
        // writes and costs 776 gas more on every task.
        assembly ("memory-safe") {
            let base := t.slot
            sstore(base, or(sload(base), shl(251, 1))) // flags |= _HANDED_OVER (bit 3)
            sstore(add(base, 2), or(nextProvider, shl(160, sub(left, amount))))
            sstore(add(base, 3), or(verifier, shl(160, price)))
        }
        emit TaskReassigned(taskId, lost, nextProvider, step, leaf, amount);
    }

    /// @dev The hash a provider signs (EIP-191 personal message of these 32
    ///      bytes) to claim `amount` for its work up to checkpoint `leaf` at `step`
    ///      of `taskId` on this market and chain (gensyn_jupyter.chain.progress_hash).
    function _progressHash(bytes32 taskId, uint256 step, bytes32 leaf, uint256 amount)
        private
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(_PROGRESS_TAG, block.chainid, address(this), taskId, step, leaf, amount));
    }

    /// @notice Anyone: challenge a committed task during its window with a bond >= minBond.
    function challenge(bytes32 taskId) external payable {
        Task storage t = _task(taskId);
        _requireStatus(taskId, t.status, Status.Committed);
        uint64 end = t.challengeEnd;
        if (block.timestamp >= end) revert ChallengeWindowClosed(end);
        if (msg.value < minBond) revert BondTooLow(msg.value, minBond);
        t.status = Status.Challenged;
        t.challenger = msg.sender;
        t.bond = _u96(msg.value);
        _holdings.bonds += uint120(msg.value);
        emit TaskChallenged(taskId, msg.sender, msg.value);
    }

    /// @notice Referee only, on a Challenged or Disputed task.
    ///         `cheater` != 0 proves fraud by that provider: its stake is slashed by up
    ///         to slashAmount (1/2 to the submitter, 1/4 to the whistleblower, the rest
    ///         to the treasury), the whole escrow goes back to the submitter and the
    ///         challenger's bond back to the challenger. The whistleblower is the
    ///         challenger, or in a dispute the other replica.
    ///         `cheater` == 0 rejects the challenge (or clears the dispute): the bond
    ///         goes to the provider(s), the task is Committed again, and it can be
    ///         challenged again or finalized once its original window has closed.
    function resolve(bytes32 taskId, address cheater) external {
        if (msg.sender != referee) revert NotReferee(msg.sender);
        Task storage t = _task(taskId);
        Status status = t.status;
        if (status != Status.Challenged && status != Status.Disputed) {
            revert WrongStatus(taskId, uint8(status));
        }
        address provider = t.provider;
        address provider2 = t.provider2;
        if (cheater != address(0) && cheater != provider && cheater != provider2 && !_handedOver(taskId, cheater)) {
            revert InvalidCheater(taskId, cheater);
        }
        address challenger = t.challenger;
        uint256 bond = t.bond;
        if (bond != 0) {
            t.bond = 0;
            _holdings.bonds -= uint120(bond);
        }
        if (cheater == address(0)) {
            t.status = Status.Committed;
            if (provider2 != address(0)) {
                uint256 half = bond / 2;
                _credit(provider2, half);
                _credit(provider, bond - half);
            } else {
                _credit(provider, bond);
            }
            emit ChallengeRejected(taskId, challenger, bond);
            return;
        }
        t.status = Status.Slashed;
        address whistleblower = challenger;
        if (whistleblower == address(0)) whistleblower = cheater == provider ? provider2 : provider;
        uint256 slashed = _slash(cheater, taskId, slashAmount);
        uint256 toSubmitter = slashed / 2;
        uint256 toWhistleblower = slashed / 4;
        uint256 toTreasury = slashed - toSubmitter - toWhistleblower;
        uint256 escrow = uint256(t.maxPayment) + t.verifierFee;
        _pay(t.submitter, escrow + toSubmitter);
        _pay(whistleblower, toWhistleblower + bond);
        _pay(treasury, toTreasury);
        _totals.escrow -= uint120(escrow);
        _totals.credits += uint128(escrow + slashed + bond);
        emit FraudProven(taskId, cheater, whistleblower, slashed, toSubmitter, toWhistleblower, toTreasury);
    }

    /// @notice Anyone, once the challenge window of a Committed task has closed: pay
    ///         the provider(s) what they claimed, the verifier its fee (refunded when
    ///         there is no verifier) and credit the rest back to the submitter.
    function finalize(bytes32 taskId) external {
        Task storage t = _task(taskId);
        _requireStatus(taskId, t.status, Status.Committed);
        uint64 end = t.challengeEnd;
        if (block.timestamp < end) revert ChallengeWindowOpen(end);
        t.status = Status.Finalized;
        uint256 escrow = uint256(t.maxPayment) + t.verifierFee;
        uint256 paid = t.amountDue;
        _pay(t.provider, paid);
        if (t.flags & _HANDED_OVER != 0) {
            uint256[] storage handovers = _handovers[taskId];
            for (uint256 i = 0; i < handovers.length; i++) {
                uint256 h = handovers[i];
                _pay(address(uint160(h)), h >> 160);
                paid += h >> 160;
            }
        }
        if (t.flags & _REPLICATED != 0) {
            uint256 paid2 = t.amountDue2;
            _pay(t.provider2, paid2);
            paid += paid2;
        }
        uint256 fee;
        address verifier = t.verifier;
        if (verifier != address(0)) {
            fee = t.verifierFee;
            _pay(verifier, fee);
        }
        uint256 refund = escrow - paid - fee;
        _pay(t.submitter, refund);
        _settle(escrow);
        emit TaskFinalized(taskId, paid, fee, refund);
    }

    /// @notice Anyone, after the deadline of a task that is Open or Assigned (not all
    ///         providers committed): the whole escrow goes back to the submitter, and
    ///         each assigned provider that did not commit loses up to expiryPenalty of
    ///         its stake, also to the submitter.
    function expire(bytes32 taskId) external {
        Task storage t = _task(taskId);
        Status status = _status(t);
        if (status != Status.Open && status != Status.Assigned) revert WrongStatus(taskId, uint8(status));
        uint64 deadline = t.deadline;
        if (block.timestamp <= deadline) revert DeadlineNotReached(deadline);
        t.status = Status.Expired;
        uint256 refund = uint256(t.maxPayment) + t.verifierFee;
        uint256 penalty;
        if (status == Status.Assigned) {
            uint8 flags = t.flags;
            if (flags & _COMMITTED1 == 0) penalty = _slash(t.provider, taskId, expiryPenalty);
            if (flags & _REPLICATED != 0 && flags & _COMMITTED2 == 0) {
                penalty += _slash(t.provider2, taskId, expiryPenalty);
            }
        }
        _pay(t.submitter, refund + penalty);
        _totals.escrow -= uint120(refund);
        _totals.credits += uint128(refund + penalty);
        emit TaskExpired(taskId, refund, penalty);
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Pay the caller all of its credit. The credit is zeroed before the
    ///         transfer, so a receiver that calls back finds nothing left.
    function withdraw() external {
        Account storage a = _accounts[msg.sender];
        uint256 amount = a.credit;
        if (amount == 0) revert NothingToWithdraw();
        a.credit = 0;
        _totals.credits -= uint128(amount);
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice The stored task (status None when there is none). `replicaRoot` is the
    ///         first root of a replicated task; roots and output hashes are in events.
    function getTask(bytes32 taskId) external view returns (Task memory t) {
        t = _tasks[taskId];
        if (t.status == Status.Open && t.provider != address(0)) t.status = Status.Assigned;
    }

    function stakeOf(address provider) external view returns (uint256 bonded, uint256 unbonding, uint64 unbondAt) {
        Account storage a = _accounts[provider];
        return (a.bonded, a.unbonding, a.unbondAt);
    }

    function credits(address account) external view returns (uint256) {
        return _accounts[account].credit;
    }

    function totalEscrow() external view returns (uint256) {
        return _totals.escrow;
    }

    function totalStake() external view returns (uint256) {
        return _holdings.stake;
    }

    function totalBonds() external view returns (uint256) {
        return _holdings.bonds;
    }

    function totalCredits() external view returns (uint256) {
        return _totals.credits;
    }

    // ------------------------------------------------------------------ internals

    function _task(bytes32 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (t.status == Status.None) revert UnknownTask(taskId);
    }

    /// @dev Assigned is stored as Open with a provider set, which saves the assign
    ///      transaction a storage write (2,900 gas); this derives the real status.
    function _status(Task storage t) private view returns (Status status) {
        status = t.status;
        if (status == Status.Open && t.provider != address(0)) status = Status.Assigned;
    }

    function _requireStatus(bytes32 taskId, Status status, Status expected) private pure {
        if (status != expected) revert WrongStatus(taskId, uint8(status));
    }

    function _requireStaked(address provider) private view {
        uint256 bonded = _accounts[provider].bonded;
        if (bonded < minStake) revert StakeTooLow(provider, bonded, minStake);
    }

    function _openWindow(Task storage t, Status status) private returns (uint64 end) {
        end = uint64(block.timestamp) + challengeWindow;
        t.challengeEnd = uint40(end);
        t.status = status;
    }

    /// @dev Credits `amount` (skipping zero) and counts it in the credits total.
    function _credit(address to, uint256 amount) private {
        _pay(to, amount);
        _totals.credits += uint128(amount);
    }

    /// @dev Adds `amount` to `to`'s credit; the caller counts it in the credits total.
    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        Account storage a = _accounts[to];
        (a.credit, a.used) = (_u96(a.credit + amount), true);
    }

    /// @dev Moves `amount` of escrow to credits (both counters share one slot).
    function _settle(uint256 amount) private {
        Totals storage totals = _totals;
        (totals.escrow, totals.credits) = (totals.escrow - uint120(amount), totals.credits + uint128(amount));
    }

    /// @dev Takes up to `amount` from `provider`'s stake, bonded first, then
    ///      unbonding. Returns what was taken; the caller credits it somewhere.
    function _slash(address provider, bytes32 taskId, uint256 amount) private returns (uint256 taken) {
        Account storage a = _accounts[provider];
        uint256 bonded = a.bonded;
        if (amount <= bonded) {
            a.bonded = uint96(bonded - amount);
            taken = amount;
        } else {
            uint256 unbonding = a.unbonding;
            uint256 fromUnbonding = amount - bonded;
            if (fromUnbonding > unbonding) fromUnbonding = unbonding;
            a.bonded = 0;
            a.unbonding = uint96(unbonding - fromUnbonding);
            taken = bonded + fromUnbonding;
        }
        if (taken != 0) {
            _holdings.stake -= uint128(taken);
            emit Slashed(taskId, provider, taken);
        }
    }

    function _handedOver(bytes32 taskId, address who) private view returns (bool) {
        uint256[] storage handovers = _handovers[taskId];
        for (uint256 i = 0; i < handovers.length; i++) {
            if (address(uint160(handovers[i])) == who) return true;
        }
        return false;
    }

    /// @dev The signer of the EIP-191 personal message `hash` (65-byte r, s, v
    ///      signature, low s only); address(0) when it does not recover.
    function _recover(bytes32 hash, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (uint256(s) > _HALF_N || (v != 27 && v != 28)) return address(0);
        bytes32 digest = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash));
        return ecrecover(digest, v, r, s);
    }

    function _u96(uint256 amount) private pure returns (uint96) {
        if (amount > type(uint96).max) revert AmountTooLarge(amount, type(uint96).max);
        return uint96(amount);
    }
}
